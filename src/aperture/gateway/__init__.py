"""The inference gateway: OpenAI-compatible hosted access with keys, limits, metering and safety checks."""
