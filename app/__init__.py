"""Dashboard logic (launcher, queries, charts): importable without Streamlit."""
