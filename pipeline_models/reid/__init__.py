"""Person re-identification: crops and embeddings, track appearance, global identities; no Triton imports."""
