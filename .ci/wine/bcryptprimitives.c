/* A stand-in bcryptprimitives.dll for running Rust programs under Wine 8, which lacks the DLL.
 * Rust's std imports ProcessPrng from it for random numbers (HashMap seeds). ProcessPrng fills a
 * buffer with random bytes and always returns TRUE; here it asks RtlGenRandom
 * (advapi32!SystemFunction036), which takes a 32-bit length, in chunks. CI only: ndkctl.exe
 * ships without it, as every supported Windows has the real DLL. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG chunk = length > 0x10000000 ? 0x10000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk)) {
            /* ProcessPrng cannot fail; a failure here would hand out unrandom bytes. */
            ExitProcess(0xC0000001);
        }
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
