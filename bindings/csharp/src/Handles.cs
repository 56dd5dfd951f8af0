// Handles.cs: one SafeHandle per native handle type.
// SPDX-License-Identifier: MIT OR Apache-2.0
//
// Lifetimes. The library reference-counts natively: a session or decoder
// keeps its model alive. The managed side adds what the library cannot
// know about: a model opened from a byte[] lives in unmanaged memory this
// binding allocated (or, from FromMemory, memory with a release callback),
// which must outlive every native handle that reads it. So a SessionHandle or
// DecoderHandle holds a SafeHandle reference (DangerousAddRef) on its
// ModelHandle from creation to release: disposing or finalizing the
// LlamaModel first only marks its handle closed; the model (and its memory)
// is freed when the last session or decoder made from it is released.
//
// SafeHandle also guarantees that no handle is released while a P/Invoke
// that received it is running (the marshaller holds a reference for the
// call), so Dispose from another thread, or from inside a generation
// callback, is deferred until the call returns instead of freeing memory in
// use; and that release happens once, on the finalizer thread if nobody
// disposed.
using System;
using System.Runtime.InteropServices;

namespace Llamette
{
    /// <summary>A <c>llamette_model *</c>, with the memory it borrows when this binding allocated it.</summary>
    internal sealed class ModelHandle : SafeHandle
    {
        private IntPtr ownedMemory;
        private long ownedBytes;
        private long libraryBytes;
        private Action onReleased;

        internal ModelHandle() : base(IntPtr.Zero, true) { }

        public override bool IsInvalid { get { return handle == IntPtr.Zero; } }

        /// <summary>
        /// Takes ownership of a freshly opened model and of what it borrows:
        /// <paramref name="memory"/> (from Marshal.AllocHGlobal, freed after the
        /// model) and <paramref name="released"/> (called after the model is freed).
        /// </summary>
        internal void Attach(IntPtr model, IntPtr memory, long bytes, Action released)
        {
            ownedMemory = memory;
            ownedBytes = bytes;
            onReleased = released;
            SetHandle(model);
        }

        /// <summary>
        /// Tells the GC about memory the library allocated for the model
        /// (ModelInfo.OwnedBytes), given back when the model is freed.
        /// </summary>
        internal void AddPressure(long bytes)
        {
            GC.AddMemoryPressure(bytes);
            libraryBytes += bytes;
        }

        protected override bool ReleaseHandle()
        {
            // Only runs when no session or decoder holds a reference: the
            // library frees the model (and unmaps its file, or frees its copy) now.
            Native.llamette_model_free(handle);
            if (libraryBytes > 0)
            {
                GC.RemoveMemoryPressure(libraryBytes);
                libraryBytes = 0;
            }
            if (ownedMemory != IntPtr.Zero)
            {
                Marshal.FreeHGlobal(ownedMemory);
                if (ownedBytes > 0) GC.RemoveMemoryPressure(ownedBytes);
                ownedMemory = IntPtr.Zero;
            }
            Action released = onReleased;
            onReleased = null;
            if (released != null)
            {
                try
                {
                    released();
                }
                catch (Exception)
                {
                    // ReleaseHandle must not throw (it may run on the finalizer thread).
                }
            }
            return true;
        }
    }

    /// <summary>
    /// A native handle made from a model. It holds a reference on a parent
    /// SafeHandle that keeps the model's memory alive: the ModelHandle itself,
    /// or a SessionHandle (which holds the ModelHandle) for a decoder a session
    /// makes after its LlamaModel was disposed (a closed SafeHandle cannot be
    /// referenced again, an open child of it can).
    /// </summary>
    internal abstract class ModelChildHandle : SafeHandle
    {
        private SafeHandle parent;
        private IntPtr modelPointer;
        private ModelHandle model;

        protected ModelChildHandle() : base(IntPtr.Zero, true) { }

        public override bool IsInvalid { get { return handle == IntPtr.Zero; } }

        /// <summary>The model's native pointer, valid while this handle lives.</summary>
        internal IntPtr ModelPointer { get { return modelPointer; } }

        /// <summary>The model's handle (kept alive, directly or through the parent).</summary>
        internal ModelHandle Model { get { return model; } }

        /// <summary>
        /// Makes a child of <paramref name="model"/>: references it, calls
        /// <paramref name="create"/> with its native pointer and takes the result.
        /// On failure the reference is dropped and the exception propagates.
        /// </summary>
        internal static T Create<T>(ModelHandle model, Func<IntPtr, IntPtr> create) where T : ModelChildHandle, new()
        {
            return Create<T>(model, model, model.DangerousGetHandle(), create);
        }

        /// <summary>As above, under another child of the same model.</summary>
        internal static T Create<T>(ModelChildHandle sibling, Func<IntPtr, IntPtr> create) where T : ModelChildHandle, new()
        {
            return Create<T>(sibling, sibling.model, sibling.modelPointer, create);
        }

        private static T Create<T>(SafeHandle parent, ModelHandle model, IntPtr modelPointer,
            Func<IntPtr, IntPtr> create) where T : ModelChildHandle, new()
        {
            // Allocate the managed object first: nothing can fail between the
            // native call and taking ownership of its result.
            T child = new T();
            bool added = false;
            try
            {
                parent.DangerousAddRef(ref added);
                IntPtr raw = create(modelPointer);
                child.parent = parent;
                child.model = model;
                child.modelPointer = modelPointer;
                child.SetHandle(raw);
                added = false; // the child owns the reference now
                return child;
            }
            finally
            {
                if (added) parent.DangerousRelease();
            }
        }

        protected abstract void Free(IntPtr h);

        protected override bool ReleaseHandle()
        {
            Free(handle);
            SafeHandle p = parent;
            parent = null;
            if (p != null) p.DangerousRelease();
            return true;
        }
    }

    /// <summary>A <c>llamette_session *</c> (from <c>llamette_session_new</c>).</summary>
    internal sealed class SessionHandle : ModelChildHandle
    {
        /// <summary>
        /// The user_data of the host pool installed with
        /// llamette_session_set_parallel: it must stay valid until the session is
        /// freed or the setting replaced, so this handle owns it.
        /// </summary>
        internal GCHandle ParallelPool;

        /// <summary>The user_data of the logits hook (a Session.HookState), owned likewise.</summary>
        internal GCHandle LogitsHook;

        protected override void Free(IntPtr h)
        {
            // Joins the built-in pool's threads, if any, and frees the memory.
            Native.llamette_session_free(h);
            if (ParallelPool.IsAllocated) ParallelPool.Free();
            if (LogitsHook.IsAllocated) LogitsHook.Free();
        }
    }

    /// <summary>A <c>llamette_decoder *</c>.</summary>
    internal sealed class DecoderHandle : ModelChildHandle
    {
        protected override void Free(IntPtr h)
        {
            Native.llamette_decoder_free(h);
        }
    }
}
