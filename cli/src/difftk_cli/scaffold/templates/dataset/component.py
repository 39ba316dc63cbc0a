"""Points spread uniformly over the dark squares of a 4×4 checkerboard on [−2, 2]² (Grathwohl et al.
2019, FFJORD), a density with sharp edges that toy models find hard."""

import attrs
import torch
from difftk.data.arrays import ArrayDataset
from difftk.errors import DifftkError
from difftk.options import option


@attrs.frozen
class MyPluginData:
    """n points per split, seeded: the train and test splits are independent draws."""

    n: int = option(4000, help="points per split", ge=1, le=10_000_000)
    seed: int = option(0, help="seed of the draw (the test split uses seed + 1)", ge=0)

    def load(self, split: str = "train") -> ArrayDataset:
        if split not in ("train", "test"):
            raise DifftkError(f"checkerboard: unknown split {split!r} (splits: train, test)")
        g = torch.Generator().manual_seed(self.seed + (split == "test"))
        cell = torch.randint(0, 8, (self.n,), generator=g)  # one of the 8 dark squares
        row = cell // 2
        col = 2 * (cell % 2) + row % 2  # dark where row + col is even
        xy = torch.stack([col, row], dim=1).float() + torch.rand(self.n, 2, generator=g)
        return ArrayDataset(data=xy - 2.0, name="checkerboard")
