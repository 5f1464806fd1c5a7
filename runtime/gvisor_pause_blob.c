/* gvisor_pause_blob.c -- the static pid 1 of gVisor sandboxes
 * (gvisor_pause.c), embedded in the runtime library; gvisor.c writes it to
 * the state directory, from where runsc binds it into each sandbox.  */
__asm__(".section .rodata.rt_gvisor_pause_blob,\"a\",@progbits\n"
        ".balign 16\n"
        ".globl rt_gvisor_pause_blob\n"
        ".hidden rt_gvisor_pause_blob\n"
        "rt_gvisor_pause_blob:\n"
        ".incbin \"" RT_GVISOR_PAUSE_PATH "\"\n"
        ".globl rt_gvisor_pause_blob_end\n"
        ".hidden rt_gvisor_pause_blob_end\n"
        "rt_gvisor_pause_blob_end:\n"
        ".previous\n");
