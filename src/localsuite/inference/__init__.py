"""llama.cpp inference: find `llama-server`, know the models, build its command line."""
