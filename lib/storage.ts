import {
  CreateBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3'
import { type Config, getConfig } from './config.ts'
import { serviceUnavailable } from './errors.ts'

let client: S3Client | undefined

type S3Settings = Pick<
  Config,
  | 'S3_ENDPOINT'
  | 'S3_REGION'
  | 'S3_FORCE_PATH_STYLE'
  | 'S3_ACCESS_KEY_ID'
  | 'S3_SECRET_ACCESS_KEY'
>

/** An S3 client for these settings; the service and the backup tool both use it. */
export function createS3Client(settings: S3Settings): S3Client {
  if (!settings.S3_ENDPOINT) throw new Error('S3_ENDPOINT is not set')
  return new S3Client({
    endpoint: settings.S3_ENDPOINT,
    region: settings.S3_REGION,
    forcePathStyle: settings.S3_FORCE_PATH_STYLE,
    credentials: {
      accessKeyId: settings.S3_ACCESS_KEY_ID,
      secretAccessKey: settings.S3_SECRET_ACCESS_KEY,
    },
    // Many S3-compatible servers store the aws-chunked wire form of a body sent with
    // the default checksum settings; checksums only when the operation needs them.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    maxAttempts: 2,
  })
}

/** The process's S3 client, configured once from the environment. */
export function getS3(): S3Client {
  client ??= createS3Client(getConfig())
  return client
}

export function resetStorage(): void {
  client?.destroy()
  client = undefined
}

function translate(error: unknown, action: string): unknown {
  if (
    error instanceof S3ServiceException &&
    (error.$metadata.httpStatusCode ?? 500) < 500
  ) {
    return error
  }
  return serviceUnavailable(
    'storage_unavailable',
    `Object storage is unavailable (${action})`,
    error,
  )
}

export async function putObject(
  key: string,
  body: Buffer,
  contentType: string,
): Promise<void> {
  try {
    await getS3().send(
      new PutObjectCommand({
        Bucket: getConfig().S3_BUCKET,
        Key: key,
        Body: body,
        ContentType: contentType,
        ContentLength: body.length,
      }),
    )
  } catch (error) {
    throw translate(error, 'put')
  }
}

export async function getObject(key: string): Promise<Buffer> {
  try {
    const result = await getS3().send(
      new GetObjectCommand({ Bucket: getConfig().S3_BUCKET, Key: key }),
    )
    if (!result.Body) throw new Error(`object ${key} has no body`)
    return Buffer.from(await result.Body.transformToByteArray())
  } catch (error) {
    throw translate(error, 'get')
  }
}

export async function deleteObject(key: string): Promise<void> {
  try {
    await getS3().send(
      new DeleteObjectCommand({ Bucket: getConfig().S3_BUCKET, Key: key }),
    )
  } catch (error) {
    throw translate(error, 'delete')
  }
}

/** Creates the bucket when it is missing; the launcher and tests call it at start. */
export async function ensureBucket(): Promise<void> {
  const Bucket = getConfig().S3_BUCKET
  try {
    await getS3().send(new HeadBucketCommand({ Bucket }))
  } catch {
    await getS3().send(new CreateBucketCommand({ Bucket }))
  }
}
