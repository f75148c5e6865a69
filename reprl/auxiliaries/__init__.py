"""Auxiliary components any agent can switch on: RND (exploration bonus), SSL losses."""
