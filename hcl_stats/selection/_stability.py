def structure_stability(*a, **k):
    raise NotImplementedError
