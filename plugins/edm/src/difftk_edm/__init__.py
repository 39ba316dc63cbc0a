"""EDM, Elucidating the Design Space of Diffusion-Based Generative Models (Karras et al. 2022), for difftk."""
