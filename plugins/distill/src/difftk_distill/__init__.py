"""Distillation for difftk: consistency distillation and rectified-flow reflow, any difftk model as the teacher."""
