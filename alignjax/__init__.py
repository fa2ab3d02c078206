"""alignjax: equilibria of games in which a user consults several competing AI agents."""
