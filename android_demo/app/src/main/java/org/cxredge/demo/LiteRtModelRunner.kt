package org.cxredge.demo

import java.nio.Buffer
import java.nio.ByteBuffer
import java.nio.ByteOrder
import org.cxredge.core.BundleFormatException
import org.cxredge.core.DType
import org.cxredge.core.ModelFile
import org.cxredge.core.ModelRunner
import org.cxredge.core.OutputBinding
import org.cxredge.core.RawTensor
import org.cxredge.core.TensorSpec
import org.tensorflow.lite.DataType
import org.tensorflow.lite.Interpreter
import org.tensorflow.lite.Tensor

/**
 * The core's [ModelRunner] on the LiteRT `Interpreter`: the only code that touches LiteRT. Each model is
 * loaded on first use; its tensors are checked against the manifest and its outputs bound to their roles
 * by shape ([OutputBinding]), as the Python engine does. Tensors are copied in and out in their storage
 * type; (de)quantisation happens in the core. Not thread-safe: use it from one worker thread.
 */
class LiteRtModelRunner(
    private val bundle: AssetBundle,
    private val threads: Int = 2,
) : ModelRunner, AutoCloseable {

    private class Loaded(val interpreter: Interpreter, val binding: OutputBinding)

    private val loaded = HashMap<String, Loaded>()

    override fun run(model: ModelFile, input: RawTensor): Map<String, RawTensor> {
        val m = loaded.getOrPut(model.name()) { load(model) }
        val outputs = HashMap<Int, Any>()
        val buffers = LinkedHashMap<String, ByteBuffer>()
        for ((role, index) in m.binding.indexByRole()) {
            val spec = model.outputs().getValue(role)
            val buffer = ByteBuffer.allocateDirect(spec.elementCount() * spec.dtype().bytes())
                .order(ByteOrder.nativeOrder())
            outputs[index] = buffer
            buffers[role] = buffer
        }
        m.interpreter.runForMultipleInputsOutputs(arrayOf<Any>(input.toByteBuffer()), outputs)
        val result = LinkedHashMap<String, RawTensor>()
        for ((role, buffer) in buffers) {
            result[role] = RawTensor.fromByteBuffer(model.outputs().getValue(role), buffer)
        }
        return result
    }

    private fun load(model: ModelFile): Loaded {
        val bytes = bundle.bytesOf(model)
        val buffer = ByteBuffer.allocateDirect(bytes.size).order(ByteOrder.nativeOrder())
        buffer.put(bytes)
        (buffer as Buffer).rewind() // Buffer's method: the covariant ByteBuffer.rewind() is missing on old Android
        val interpreter = Interpreter(buffer, Interpreter.Options().setNumThreads(threads))
        try {
            val outputs = (0 until interpreter.outputTensorCount).map { specOf(interpreter.getOutputTensor(it)) }
            val binding = OutputBinding.match(model, specOf(interpreter.getInputTensor(0)), outputs)
            return Loaded(interpreter, binding)
        } catch (e: RuntimeException) {
            interpreter.close()
            throw e
        }
    }

    override fun close() {
        loaded.values.forEach { it.interpreter.close() }
        loaded.clear()
    }

    private companion object {
        fun specOf(tensor: Tensor): TensorSpec {
            val dtype = when (tensor.dataType()) {
                DataType.FLOAT32 -> DType.FLOAT32
                DataType.INT8 -> DType.INT8
                DataType.UINT8 -> DType.UINT8
                else -> throw BundleFormatException(
                    null, "unsupported tensor type", "float32, int8 or uint8", tensor.dataType().toString(),
                )
            }
            val q = tensor.quantizationParams()
            return TensorSpec(tensor.shape(), dtype, q.scale.toDouble(), q.zeroPoint)
        }
    }
}
