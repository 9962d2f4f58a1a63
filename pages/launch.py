"""Launch: a preset, a base model, branches and every config field as a form; errors show
inline before anything is recorded. Also launches an ablation set or a grid sweep (presets x
grid points x seeds, all or nothing)."""

import streamlit as st

from app.dashboard.launch_view import draw_ablation_set, draw_form, draw_single_launch

st.title(":material/rocket_launch: Launch a run")
form = draw_form()
draw_single_launch(form)
st.divider()
draw_ablation_set(form)
