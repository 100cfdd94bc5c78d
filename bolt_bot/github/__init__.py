"""GitHub: the API client and what Bolt believes of its answers, publishing, commands, and the Action's activities."""
