"""The variance-preserving SDE (Song, Sohl-Dickstein, Kingma, Kumar, Ermon & Poole 2021) for difftk."""
