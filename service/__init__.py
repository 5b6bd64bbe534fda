"""The moderation service: a BentoML shell over one inference function, with its prediction log."""
