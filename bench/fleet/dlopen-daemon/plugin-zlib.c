/* libfleet-zlib.so: answers with zlib's version, the CRC-32 and the deflated size of the input. */
#include <stdio.h>
#include <string.h>
#include <zlib.h>

#include "plugin.h"

int fleet_answer(const char *input, char *out, size_t size)
{
    unsigned char packed[1024];
    uLongf packed_size = sizeof packed;
    uLong length = (uLong)strlen(input);

    if (compress2(packed, &packed_size, (const Bytef *)input, length, 9) != Z_OK) {
        snprintf(out, size, "compress2 failed");
        return -1;
    }
    snprintf(out, size, "zlib %s crc32=%08lx deflated=%lu", zlibVersion(),
             crc32(0L, (const Bytef *)input, (uInt)length), (unsigned long)packed_size);
    return 0;
}
