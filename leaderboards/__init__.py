"""Leaderboards: SQL over the store, statistics and renderers (arriving with the leaderboard issue)."""
