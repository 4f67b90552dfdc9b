"""The Legato control plane."""
