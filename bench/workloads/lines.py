# lines.py FILE N — N lines of words and numbers, deterministic: input for
# the sort and xz workloads.
import random, sys
random.seed(11)
words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
with open(sys.argv[1], "w") as f:
    for i in range(int(sys.argv[2])):
        f.write("%s %08d %s\n" % (random.choice(words), random.randrange(10**8),
                                  random.choice(words) * random.randrange(1, 4)))
