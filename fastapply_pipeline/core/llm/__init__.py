"""LLM providers: prompts, requests, the response cache, rate limits, sync and batch clients."""
