"""``megen app``: the interactive MEG page (server, Generate and Explore logic, static front end)."""
