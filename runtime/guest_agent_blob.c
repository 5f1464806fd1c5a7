/* guest_agent_blob.c -- the microVM guest agent (guest/agent.c, static),
 * embedded in the runtime library; microvm.c writes it into each VM's
 * initramfs as /init.  */
__asm__(".section .rodata.rt_guest_agent_blob,\"a\",@progbits\n"
        ".balign 16\n"
        ".globl rt_guest_agent_blob\n"
        ".hidden rt_guest_agent_blob\n"
        "rt_guest_agent_blob:\n"
        ".incbin \"" RT_GUEST_AGENT_PATH "\"\n"
        ".globl rt_guest_agent_blob_end\n"
        ".hidden rt_guest_agent_blob_end\n"
        "rt_guest_agent_blob_end:\n"
        ".previous\n");
