"""What samplers share (calling the denoiser, affine step plans, step reports) and the batch loop
that :meth:`difftk.model.Model.sample` runs."""
