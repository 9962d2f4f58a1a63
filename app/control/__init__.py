"""The process control plane, without Streamlit: queueing and starting trainer processes
(`launcher`, `procs`, `gpus`), the supervisor tick, alert rules, sweeps, the demo launch and
the CLI commands `copd launch | runs | cancel | resume | supervise | sweep | alerts`."""
