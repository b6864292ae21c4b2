"""Leaderboards: SQL over the store (``query``), statistics (``stats``), the board (``board``), judge agreement
(``agreement``), renderers (``render``, ``html``) and plots (``plots``)."""
