/* The DDK headers Sluice's Windows drivers are bound to (mingw-w64's ddk/). */
#include <ntddk.h>
