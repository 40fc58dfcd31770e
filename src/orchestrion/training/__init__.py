"""Training: feature pipelines, model fits and the versioned model registry."""
