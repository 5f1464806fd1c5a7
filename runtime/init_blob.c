/* init_blob.c -- the static sandbox init binary (sandbox_init.c), embedded
 * in the runtime library so it is always at hand and cannot be swapped on
 * disk; RT_INIT_PATH names the built binary at compile time.  */
__asm__(".section .rodata.rt_init_blob,\"a\",@progbits\n"
        ".balign 16\n"
        ".globl rt_init_blob\n"
        ".hidden rt_init_blob\n"
        "rt_init_blob:\n"
        ".incbin \"" RT_INIT_PATH "\"\n"
        ".globl rt_init_blob_end\n"
        ".hidden rt_init_blob_end\n"
        "rt_init_blob_end:\n"
        ".previous\n");
