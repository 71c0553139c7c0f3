"""Stage 4, vectors: profile vectors in Qdrant and an in-process snapshot, lookalikes, next products.

- `profile_vectors`: behaviour and content vectors, and what a build writes;
- `embeddings`: product texts → MiniLM embeddings (local model, never downloaded);
- `layout`, `qdrant`, `snapshot`, `stores`: the store interface, its two backends and which answers;
- `lookalike`, `next_products`: the queries.
"""
