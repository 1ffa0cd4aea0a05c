"""The OpenAI-compatible gateway: aliases → ordered backends, failover, breakers, metrics."""
