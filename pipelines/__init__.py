"""The moderation loop's code outside the service, one subpackage per part of the loop
(docs/architecture.md):

- core:    params, data, classifier, metadata, production pointer, errors, git: what every
           part may import, the service included;
- stages:  the DVC stages of dvc.yaml (validate, train, evaluate, compare) and what only they use;
- release: the retrain workflow's steps, promotion and revert pull requests, the GitHub API;
- deploy:  the k8s overlays' image pins, rendering, policy and the rollout;
- ci:      the generated GitHub workflows, their rules and triggers, and `doctor`;
- monitor: drift of logged traffic, the review UI's export back into the dataset.
"""
