"""Model plumbing shared by risk, licensing and gateway: the bundled model, loading, engines."""
