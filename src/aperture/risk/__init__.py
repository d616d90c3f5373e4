"""Risk assessment (R2, R3): evaluation suites on real weights, imported evidence, risk profiles."""
