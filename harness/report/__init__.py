"""HTML leaderboards from the results database."""
