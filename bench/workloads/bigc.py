# bigc.py FILE N — a C file of N chained functions with local arrays: a
# medium-sized compile for gcc (deterministic).
import sys
n = int(sys.argv[2])
with open(sys.argv[1], "w") as f:
    f.write("#include <string.h>\n")
    for i in range(n):
        f.write("int f%d(int x) { int a[%d]; memset(a, 0, sizeof a); "
                "for (int i = 0; i < %d; i++) a[i] = x * i + %d; "
                "return a[x %% %d] + (x > 3 ? f%d(x - 1) : 0); }\n"
                % (i, 8 + i % 32, 8 + i % 32, i, 8 + i % 32, max(i - 1, 0)))
    f.write("int main(void) { return f%d(7) & 1; }\n" % (n - 1))
