def init(): pass
def run(d): return d
