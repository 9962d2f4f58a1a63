"""Model builders apart from the training code: the tiny char-level models the tests and
the demo use (`tiny`, `tiny_vlm`) and the demo's shipped base model (`demo_base`, with its
files in `assets/`)."""
