"""``legato completion bash|zsh|fish``: shell completion of commands, options and the
values of options with fixed choices, generated from the command's own parser, so it
never falls behind a new command or flag.

    source <(legato completion bash)                      # in ~/.bashrc
    legato completion zsh > "${fpath[1]}/_legato"         # then restart zsh
    legato completion fish > ~/.config/fish/completions/legato.fish

Each script finds the command being typed (``schedule preview``) from the words before
the cursor, then offers its subcommands, its options (after ``-``) or, after an option
with choices (``-o``, ``--status``), those choices."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field

__all__ = ["Command", "Option", "command_tree", "register", "script"]

SHELLS = ("bash", "zsh", "fish")


@dataclass
class Option:
    flags: list[str]
    help: str
    takes_value: bool
    choices: list[str]


@dataclass
class Command:
    """One command of the tree; ``path`` is its words after ``legato``."""

    path: tuple[str, ...]
    help: str
    parser: argparse.ArgumentParser
    options: list[Option] = field(default_factory=list)
    positionals: list[argparse.Action] = field(default_factory=list)
    subcommands: dict[str, str] = field(default_factory=dict)
    """Name → help."""

    @property
    def words(self) -> list[str]:
        """What may be typed next that is not an option: a subcommand, or a value of a
        positional argument with choices (``completion bash``)."""
        choices = [str(c) for a in self.positionals for c in a.choices or ()]
        return [*self.subcommands, *choices]


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    text = "print a shell completion script: source <(legato completion bash)"
    p = sub.add_parser("completion", help=text, description=__doc__.split("\n\n")[0])
    p.add_argument("shell", choices=SHELLS, help="the shell to complete in: bash, zsh or fish")
    p.set_defaults(handler=completion, needs_client=False)


def completion(args: argparse.Namespace) -> int:
    from legato.cli.main import build_parser

    sys.stdout.write(script(args.shell, command_tree(build_parser())))
    return 0


def command_tree(parser: argparse.ArgumentParser) -> list[Command]:
    """Every command of ``parser`` (the root first), depth first."""
    found: list[Command] = []

    def walk(current: argparse.ArgumentParser, path: tuple[str, ...], help_text: str) -> None:
        command = Command(path, help_text, current)
        found.append(command)
        children: list[tuple[str, argparse.ArgumentParser, str]] = []
        for action in current._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {a.dest: a.help or "" for a in action._choices_actions}
                for name, child in action.choices.items():
                    command.subcommands[name] = str(helps.get(name, ""))
                    children.append((name, child, str(helps.get(name, ""))))
            elif action.option_strings:
                command.options.append(
                    Option(
                        flags=list(action.option_strings),
                        help="" if action.help in (None, argparse.SUPPRESS) else str(action.help),
                        takes_value=action.nargs != 0,
                        choices=[str(c) for c in action.choices or ()],
                    )
                )
            else:
                command.positionals.append(action)
        for name, child, text in children:
            walk(child, (*path, name), text)

    walk(parser, (), parser.description or "")
    return found


def script(shell: str, commands: list[Command]) -> str:
    if shell == "bash":
        return _bash(commands)
    if shell == "zsh":
        return _zsh(commands)
    return _fish(commands)


# -- bash and zsh share their lookup functions: case statements over the command path ----


def _lookup_functions(commands: list[Command]) -> str:
    subcommands = [(c.path, " ".join(c.subcommands)) for c in commands]
    words = [(c.path, " ".join(c.words)) for c in commands]
    options = [(c.path, " ".join(f for o in c.options for f in o.flags)) for c in commands]
    valued = [
        (c.path, " ".join(f for o in c.options if o.takes_value for f in o.flags)) for c in commands
    ]
    choices = [
        (c.path, flag, " ".join(o.choices))
        for c in commands
        for o in c.options
        if o.choices
        for flag in o.flags
    ]
    lines = ["_legato_subcommands() {", '    case "$1" in']
    lines += [f'        {_word(path)}) echo "{words}" ;;' for path, words in subcommands if words]
    lines += ["    esac", "}", "_legato_words() {", '    case "$1" in']
    lines += [f'        {_word(path)}) echo "{text}" ;;' for path, text in words if text]
    lines += ["    esac", "}", "_legato_options() {", '    case "$1" in']
    lines += [f'        {_word(path)}) echo "{words}" ;;' for path, words in options if words]
    lines += ["    esac", "}", "_legato_valued() {", '    case "$1" in']
    lines += [f'        {_word(path)}) echo "{words}" ;;' for path, words in valued if words]
    lines += ["    esac", "}", "_legato_choices() {", '    case "$1|$2" in']
    lines += [
        f'        {_word(" ".join(path) + "|" + flag)}) echo "{words}" ;;'
        for path, flag, words in choices
    ]
    lines += ["    esac", "}"]
    return "\n".join(lines) + "\n"


def _word(path: tuple[str, ...] | str) -> str:
    text = path if isinstance(path, str) else " ".join(path)
    return "'" + text.replace("'", "'\\''") + "'"


_BASH = r"""# bash completion for legato: source <(legato completion bash)
{lookups}
_legato_path() {{
    # The command being typed: the words before the cursor that name subcommands,
    # skipping options and the values of options that take one.
    local path="" word skip=0 i
    for ((i = 1; i < COMP_CWORD; i++)); do
        word="${{COMP_WORDS[i]}}"
        if ((skip)); then skip=0; continue; fi
        case "$word" in
            --*=*) continue ;;
            -*) [[ " $(_legato_valued "$path") " == *" $word "* ]] && skip=1; continue ;;
        esac
        if [[ " $(_legato_subcommands "$path") " == *" $word "* ]]; then
            path="${{path:+$path }}$word"
        fi
    done
    echo "$path"
}}
_legato() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    local path choices
    path="$(_legato_path)"
    choices="$(_legato_choices "$path" "$prev")"
    if [[ -n "$choices" ]]; then
        COMPREPLY=($(compgen -W "$choices" -- "$cur"))
    elif [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$(_legato_options "$path")" -- "$cur"))
    else
        COMPREPLY=($(compgen -W "$(_legato_words "$path")" -- "$cur"))
        [[ ${{#COMPREPLY[@]}} -eq 0 ]] && COMPREPLY=($(compgen -f -- "$cur"))
    fi
    return 0
}}
complete -o filenames -F _legato legato
"""


def _bash(commands: list[Command]) -> str:
    return _BASH.format(lookups=_lookup_functions(commands))


_ZSH = r"""#compdef legato
# zsh completion for legato: legato completion zsh > "${{fpath[1]}}/_legato"
{lookups}
_legato_descriptions() {{
    case "$1" in
{descriptions}
    esac
}}
_legato() {{
    local path="" word skip=0 i
    for ((i = 2; i < CURRENT; i++)); do
        word="${{words[i]}}"
        if ((skip)); then skip=0; continue; fi
        case "$word" in
            --*=*) continue ;;
            -*) [[ " $(_legato_valued "$path") " == *" $word "* ]] && skip=1; continue ;;
        esac
        if [[ " $(_legato_subcommands "$path") " == *" $word "* ]]; then
            path="${{path:+$path }}$word"
        fi
    done
    local choices="$(_legato_choices "$path" "${{words[CURRENT-1]}}")"
    if [[ -n "$choices" ]]; then
        compadd -- ${{=choices}}
    elif [[ "${{words[CURRENT]}}" == -* ]]; then
        compadd -- ${{=$(_legato_options "$path")}}
    else
        local -a described
        described=("${{(@f)$(_legato_descriptions "$path")}}")
        if [[ -n "${{described[1]}}" ]]; then
            _describe -t commands 'legato command' described
        else
            _files
        fi
    fi
}}
compdef _legato legato
"""


def _zsh_escape(name: str) -> str:
    """A name for ``_describe``, where a colon separates the name from its description."""
    return name.replace(":", "\\:")


def _zsh(commands: list[Command]) -> str:
    cases = []
    for command in commands:
        if not command.words:
            continue
        described = {**{w: "" for w in command.words}, **command.subcommands}
        entries = "\n".join(
            _zsh_escape(name) + (":" + text if text else "") for name, text in described.items()
        )
        cases.append(f"        {_word(command.path)}) echo {_word(entries)} ;;")
    return _ZSH.format(lookups=_lookup_functions(commands), descriptions="\n".join(cases))


_FISH_HEAD = r"""# fish completion for legato:
#   legato completion fish > ~/.config/fish/completions/legato.fish
function __legato_path
    # The command being typed: the words before the cursor that name subcommands.
    set -l path
    set -l skip 0
    for word in (commandline -opc)[2..-1]
        if test $skip -eq 1
            set skip 0
            continue
        end
        switch $word
            case '--*=*'
                continue
            case '-*'
                if contains -- $word (__legato_valued (string join ' ' $path))
                    set skip 1
                end
                continue
        end
        if contains -- $word (__legato_subcommands (string join ' ' $path))
            set -a path $word
        end
    end
    string join ' ' $path
end
function __legato_at
    set -l path (__legato_path)
    test "$path" = "$argv[1]"
end
"""


def _fish(commands: list[Command]) -> str:
    lines = [_FISH_HEAD]
    for name, table in (
        ("__legato_subcommands", [(c.path, list(c.subcommands)) for c in commands]),
        (
            "__legato_valued",
            [(c.path, [f for o in c.options if o.takes_value for f in o.flags]) for c in commands],
        ),
    ):
        lines.append(f'function {name}\n    switch "$argv[1]"')
        for path, words in table:
            if words:
                lines.append(f"        case {_fish_word(' '.join(path))}")
                lines.append("            printf '%s\\n' " + " ".join(_fish_word(w) for w in words))
        lines.append("    end\nend")
    lines.append("complete -c legato -f")
    for command in commands:
        at = _fish_word(f"__legato_at {_fish_word(' '.join(command.path))}")
        for sub_name, text in command.subcommands.items():
            lines.append(
                f"complete -c legato -n {at} -a {_fish_word(sub_name)} -d {_fish_word(text)}"
            )
        for option in command.options:
            parts = ["complete -c legato -n", at]
            for flag in option.flags:
                parts += ["-l", flag[2:]] if flag.startswith("--") else ["-s", flag[1:]]
            if option.choices:
                parts += ["-x", "-a", _fish_word(" ".join(option.choices))]
            elif option.takes_value:
                parts += ["-r", "-F"]
            if option.help:
                parts += ["-d", _fish_word(option.help)]
            lines.append(" ".join(parts))
        for word in command.words:
            if word not in command.subcommands:
                lines.append(f"complete -c legato -n {at} -a {_fish_word(word)}")
        if command.positionals and not command.words:
            lines.append(f"complete -c legato -n {at} -F")
    return "\n".join(lines) + "\n"


def _fish_word(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
