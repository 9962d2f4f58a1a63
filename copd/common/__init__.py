"""What the engine, the store, the dashboard and the experiments share, torch-free: the
metric-name grammar (`names`), statistics over seeds (`stats`) and the paper-layout results
table (`tables`), and the one cancel exception (`errors.TrainingCancelled`). This package imports nothing else of the project and no third-party
module, so the run store (storage/) may import it without pulling in the engine."""
