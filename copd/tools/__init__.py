"""Commands that inspect rather than train: `doctor` (environment and GPU checks), `plan`
(memory and FLOPs per branch) and `preflight` (a config checked before anything runs)."""
