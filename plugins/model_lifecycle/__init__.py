"""Model lifecycle: retrain, gate, promote through GitOps, verify the rollout, record it in MLflow."""
