"""What every service shares: settings, errors, timeouts, retry, breaker, health, HTTP, metrics."""
