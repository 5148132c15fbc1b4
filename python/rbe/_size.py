class Size(tuple):
    """The shape of a tensor: a tuple of ints (like ``torch.Size``)."""

    def numel(self) -> int:
        n = 1
        for d in self:
            n *= d
        return n

    def __repr__(self) -> str:
        return f"rbe.Size([{', '.join(str(d) for d in self)}])"

    def __getitem__(self, i):
        r = tuple.__getitem__(self, i)
        return Size(r) if isinstance(i, slice) else r
