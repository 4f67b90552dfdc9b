"""The Legato executor agent."""
