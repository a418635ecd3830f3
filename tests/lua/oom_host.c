/* A Lua 5.1 host whose allocator fails on demand: calls the module's functions with the memory
 * budget cut at every point, from nothing spare to 4 KiB spare, so that each allocation Lua makes
 * inside them (number-to-string conversion of an argument, the answers, the logger call) fails
 * in turn, thousands of times. Lua then raises "not enough memory" with a longjmp; a Rust frame still owning a value at
 * that moment would be skipped: its destructor never runs (a leak per call, or a mutex left
 * locked: the next call hangs). Checks that no call crashes or hangs, that memory outside Lua's
 * heap does not grow with the number of failed calls, and that the module still answers after.
 *
 * Usage: oom_host SETUP.lua   (SETUP defines probe(i), which makes the calls)
 * Prints "oom: N passed, M failed". */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <malloc.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static size_t used;
static size_t limit = SIZE_MAX;

static void *budget_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    (void)ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        free(ptr);
        used -= old;
        return NULL;
    }
    if (nsize > old && used - old + nsize > limit)
        return NULL;
    void *p = realloc(ptr, nsize);
    if (p)
        used = used - old + nsize;
    return p;
}

static void hung(int sig) {
    (void)sig;
    static const char msg[] = "FAIL a call hung (a lock left held by a skipped frame?)\noom: 0 passed, 1 failed\n";
    ssize_t w = write(1, msg, sizeof msg - 1);
    (void)w;
    _exit(3);
}

/* Bytes malloc has handed out (every arena) minus what Lua holds: the Rust side's heap. */
static long outside_lua(lua_State *L) {
    lua_gc(L, LUA_GCCOLLECT, 0);
    struct mallinfo2 mi = mallinfo2();
    return (long)mi.uordblks + (long)mi.hblkhd - (long)used;
}

static int probe(lua_State *L, int i, int *oom) {
    lua_getglobal(L, "probe");
    lua_pushinteger(L, i);
    int rc = lua_pcall(L, 1, 1, 0);
    if (rc == LUA_ERRMEM)
        (*oom)++;
    else if (rc != 0) {
        fprintf(stderr, "probe %d: %s\n", i, lua_tostring(L, -1));
        return 0;
    }
    lua_settop(L, 0);
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s SETUP.lua\n", argv[0]);
        return 2;
    }
    signal(SIGALRM, hung);
    lua_State *L = lua_newstate(budget_alloc, NULL);
    luaL_openlibs(L);
    if (luaL_dofile(L, argv[1])) {
        fprintf(stderr, "setup: %s\n", lua_tostring(L, -1));
        return 2;
    }
    int passed = 0, failed = 0, oom = 0, i = 0;
    /* Warm up (the guard, its thread, the logger's first lines), then measure. */
    for (; i < 200; i++)
        if (!probe(L, i, &oom)) failed++;
    long before = outside_lua(L);
    int calls = 0;
    for (int round = 0; round < 10; round++) {
        for (size_t spare = 0; spare < 4096; spare += 4, i++, calls++) {
            alarm(10);
            lua_gc(L, LUA_GCCOLLECT, 0);
            limit = used + spare;
            if (!probe(L, i, &oom)) failed++;
            limit = SIZE_MAX;
            lua_settop(L, 0);
        }
    }
    alarm(10);
    long after = outside_lua(L);
    int ok_after = probe(L, i, &oom);
    alarm(0);
    long grown = after - before;
    printf("%d calls under a cut budget, %d ran out of memory; heap outside Lua grew %ld bytes\n",
           calls, oom, grown);
    if (oom > 1000) { printf("PASS allocations failed inside the module's calls (%d times)\n", oom); passed++; }
    else { printf("FAIL only %d calls ran out of memory: the budget did not bite\n", oom); failed++; }
    /* A skipped String (a log line: 100+ bytes) per failed call would be hundreds of KiB; the
     * loader thread's own churn is tens of KiB (measured without any failure: 9-28 KiB). */
    long bound = 16L * oom + 64 * 1024;
    if (grown < bound) { printf("PASS nothing owned by Rust was skipped (heap outside Lua +%ld bytes)\n", grown); passed++; }
    else { printf("FAIL heap outside Lua grew %ld bytes (bound %ld) over %d out-of-memory errors\n", grown, bound, oom); failed++; }
    if (ok_after) { printf("PASS the module answers after the out-of-memory errors, no lock left held\n"); passed++; }
    else { printf("FAIL the module does not answer after the out-of-memory errors\n"); failed++; }
    printf("oom: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
