/* Test helper: fchmod(open(path), mode). Busybox and dash make no fchmod call, so the file
 * sensor's fd-based chmod is driven by this (compiled by the test with clang). */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 3)
        return 2;
    int fd = open(argv[1], O_RDONLY);
    if (fd < 0 || fchmod(fd, (mode_t)strtol(argv[2], NULL, 8)) != 0)
        return 1;
    return close(fd);
}
