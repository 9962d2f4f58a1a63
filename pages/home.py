"""Home page (placeholder until the dashboard lands)."""

import streamlit as st

st.title("copd: Co-Evolving Policy Distillation workbench")
st.write("No runs yet: launch the demo with `copd train demo`.")
