module.exports = ({ logger, cluster, partitioner, eosManager, retrier }) => {
  return async ({ acks, timeout, compression, topicMessages }) => {
    // pgcdc patch (scripts/patch-dependencies.mjs; kafkajs#1303): kafkajs 2.2.4 remembered, across
    // the retries of one call, which *brokers* had answered. When a partition's leader moved to a
    // broker that had already answered, the retry sent nothing for that partition and the call
    // resolved anyway: records never written, reported as written. Here the state is kept per
    // topic-partition: every retry sends each partition that has no acknowledgement yet, to its
    // current leader, and the call resolves only when every partition is acknowledged.
    const key = (topic, partition) => `${topic}\u0000${partition}`

    /** topic -> { [partition]: messages }: grouped once, so a retry resends the same records. */
    const groupedPerTopic = new Map()
    /** key(topic, partition) -> the partition's produce response (its RecordMetadata). */
    const acknowledged = new Map()

    const createProducerRequests = async () => {
      await cluster.refreshMetadataIfNecessary()

      /** nodeId -> [{ topic, partitions, messagesPerPartition }] of partitions still to send */
      const pendingPerLeader = new Map()
      for (const { topic, messages } of topicMessages) {
        const partitionMetadata = cluster.findTopicPartitionMetadata(topic)

        if (partitionMetadata.length === 0) {
          logger.debug('Producing to topic without metadata', {
            topic,
            targetTopics: Array.from(cluster.targetTopics),
          })

          throw new KafkaJSMetadataNotLoaded('Producing to topic without metadata')
        }

        // Partitions are only ever added to a topic, never removed: the first grouping stays valid.
        let messagesPerPartition = groupedPerTopic.get(topic)
        if (!messagesPerPartition) {
          messagesPerPartition = groupMessagesPerPartition({
            topic,
            partitionMetadata,
            messages,
            partitioner,
          })
          groupedPerTopic.set(topic, messagesPerPartition)
        }

        const pending = keys(messagesPerPartition).filter(p => !acknowledged.has(key(topic, p)))
        if (pending.length === 0) continue
        const partitionsPerLeader = cluster.findLeaderForPartitions(topic, pending)
        const led = keys(partitionsPerLeader).flatMap(nodeId => partitionsPerLeader[nodeId])
        if (led.length !== pending.length) {
          // findLeaderForPartitions silently leaves out partitions missing from the metadata.
          throw new KafkaJSMetadataNotLoaded('Producing to partitions without metadata')
        }
        for (const nodeId of keys(partitionsPerLeader)) {
          if (!pendingPerLeader.has(nodeId)) pendingPerLeader.set(nodeId, [])
          pendingPerLeader.get(nodeId).push({
            topic,
            partitions: partitionsPerLeader[nodeId],
            messagesPerPartition,
          })
        }
      }

      return Array.from(pendingPerLeader.entries()).map(async ([nodeId, topicDataForBroker]) => {
        const broker = await cluster.findBroker({ nodeId })
        const topicData = createTopicData(topicDataForBroker)

        await eosManager.acquireBrokerLock(broker)
        try {
          if (eosManager.isTransactional()) {
            await eosManager.addPartitionsToTransaction(topicData)
          }

          topicData.forEach(({ topic, partitions }) => {
            partitions.forEach(entry => {
              entry['firstSequence'] = eosManager.getSequence(topic, entry.partition)
              eosManager.updateSequence(topic, entry.partition, entry.messages.length)
            })
          })

          let response
          try {
            response = await broker.produce({
              transactionalId: eosManager.isTransactional()
                ? eosManager.getTransactionalId()
                : undefined,
              producerId: eosManager.getProducerId(),
              producerEpoch: eosManager.getProducerEpoch(),
              acks,
              timeout,
              compression,
              topicData,
            })
          } catch (e) {
            topicData.forEach(({ topic, partitions }) => {
              partitions.forEach(entry => {
                eosManager.updateSequence(topic, entry.partition, -entry.messages.length)
              })
            })
            throw e
          }

          if (acks !== 0) {
            for (const entry of responseSerializer(response)) {
              acknowledged.set(key(entry.topicName, entry.partition), entry)
            }
          }
          // Every partition of the request must be in its response, or it is sent again.
          for (const { topic, partitions } of topicData) {
            for (const { partition } of partitions) {
              if (acks === 0) acknowledged.set(key(topic, partition), null)
              else if (!acknowledged.has(key(topic, partition))) {
                throw new KafkaJSMetadataNotLoaded(
                  `Produce response of broker ${nodeId} lacks ${topic}[${partition}]`
                )
              }
            }
          }
        } finally {
          await eosManager.releaseBrokerLock(broker)
        }
      })
    }

    return retrier(async (bail, retryCount, retryTime) => {
      const topics = topicMessages.map(({ topic }) => topic)
      await cluster.addMultipleTargetTopics(topics)

      try {
        const requests = await createProducerRequests()
        // Wait for every request of this attempt before retrying: a request still in flight would
        // otherwise be sent again by the next attempt while its answer is on the way.
        const settled = await Promise.allSettled(requests)
        const failure = settled.find(s => s.status === 'rejected')
        if (failure) throw failure.reason
        return Array.from(acknowledged.values()).filter(entry => entry !== null)
      } catch (e) {
        if (e.name === 'KafkaJSConnectionClosedError') {
          cluster.removeBroker({ host: e.host, port: e.port })
        }

        if (!cluster.isConnected()) {
          logger.debug(`Cluster has disconnected, reconnecting: ${e.message}`, {
            retryCount,
            retryTime,
          })
          await cluster.connect()
          await cluster.refreshMetadata()
          throw e
        }

        // This is necessary in case the metadata is stale and the number of partitions
        // for this topic has increased in the meantime
        if (
          staleMetadata(e) ||
          e.name === 'KafkaJSMetadataNotLoaded' ||
          e.name === 'KafkaJSConnectionError' ||
          e.name === 'KafkaJSConnectionClosedError' ||
          (e.name === 'KafkaJSProtocolError' && e.retriable)
        ) {
          logger.error(`Failed to send messages: ${e.message}`, { retryCount, retryTime })
          await cluster.refreshMetadata()
          throw e
        }

        logger.error(`${e.message}`, { retryCount, retryTime })
        if (e.retriable) throw e
        bail(e)
      }
    })
  }
}
