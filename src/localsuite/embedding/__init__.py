"""The embedding service: text embeddings from a local model, or a remote OpenAI-style API."""
