"""Commands that inspect rather than train: `doctor` (environment and GPU checks), `plan`
(memory and FLOPs per branch), `preflight` (a config checked before anything runs) and
`serve` (what `copd dashboard` checks before it serves: host, port, token, child processes)."""
