/* The DDK headers Sluice's Windows drivers are bound to (mingw-w64's ddk/). srb.h, not
 * storport.h: mingw-w64's storport.h redefines srb.h's SCSI_WMI_REQUEST_BLOCK (clang
 * refuses it) and predates virtual miniports; what storport.sys adds is declared in
 * src/storport.rs. */
#include <ntddk.h>
#include <srb.h>
