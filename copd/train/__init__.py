"""Training: the world built once and the state that changes (`world`), the loss terms
(`terms`), the optimizer step (`update`), checkpoints, evaluation, results, the logger
protocol, the algorithms (CoPD and the baselines, `algorithms/`) and the branch workers
(`workers/`). A new baseline is a module in `algorithms/`."""
