# pydict.py [N] — a memory-hungry Python workload for the benchmarks: a dict
# of N string keys to small lists, hashed in key order, then a list built
# from it.  Deterministic output (the benchmarks compare it with a native
# run); about 380 bytes of heap per entry.
import hashlib, random, sys
n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_200_000
random.seed(7)
d = {}
for i in range(n):
    d["key-%d-%d" % (i, random.randrange(1 << 30))] = ["v%d" % i, i * 3, str(i) * 4]
h = hashlib.sha256()
for k in sorted(d):
    h.update(k.encode()); h.update(d[k][0].encode())
print(len(d), h.hexdigest())
lst = [x for v in d.values() for x in v if isinstance(x, int)]
print(sum(lst), max(lst))
