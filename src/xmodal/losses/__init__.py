"""Every loss of the papers, each a small function of score matrices or features, tested alone."""
